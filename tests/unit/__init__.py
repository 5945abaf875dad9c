"""The unit tier: the lifecycle rules and both edges over in-memory fakes of the ports."""
