"""The MTA container: providers, scheduling, health and failover."""
