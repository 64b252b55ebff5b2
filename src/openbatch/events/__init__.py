"""Events: EventBridge-compatible rules, SNS-compatible topics and their delivery."""
