"""MQTT -> Kafka gateway: checks device messages and forwards them, or dead-letters them with a reason."""
