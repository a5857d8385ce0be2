"""Operations: the local stack that runs as deployed (``lameta-stack up/down``), its
certificates, broker identities and signed policy, and the chaos run.

Starts the apps as processes; imports none of them.
"""
