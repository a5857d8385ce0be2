"""The intent rApp: E-LAMs, in-context memory and the gRPC IntentService."""
