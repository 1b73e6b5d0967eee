"""Stream processor: Kafka batches -> validated, normalised, stored readings and alerts."""
