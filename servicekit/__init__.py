"""What every LAMeTA-RIC service runs on: the MQTT transport and topics, the embedded
broker and broker helpers, the protobuf codec of the MQTT payloads, structured logging,
signal handling and the settings bases.

Below every app (``sim_ric``, ``rapp_intent``, ``xapp_composer``, ...) and above the model
(:mod:`agentnet`); it imports no app and no learning framework.
"""
