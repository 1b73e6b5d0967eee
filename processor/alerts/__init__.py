"""Alert engine: threshold rules (pure) and the alert store with its Kafka outbox."""
