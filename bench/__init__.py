"""`telehealth bench`: end-to-end throughput beside raw baselines measured in the same run."""
