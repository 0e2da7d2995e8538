"""The event contract: CloudEvent types, payload models + JSON Schemas, the codec (the only
module that imports the CloudEvents SDK), the trigger table, publishers and the local broker."""
