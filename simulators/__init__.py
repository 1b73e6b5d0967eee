"""Device simulators: simulated patients publishing over MQTT for demo, tests and benchmarks."""
