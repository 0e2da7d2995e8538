"""Libraries shared by every DeepLens function: config, db, auth, tenancy, storage, vectors,
imaging, features, telemetry and errors."""
