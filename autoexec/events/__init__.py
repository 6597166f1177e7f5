"""What a running job tells the world: the typed event stream and the notifier protocol."""
