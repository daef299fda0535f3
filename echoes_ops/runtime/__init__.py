"""The game-worker side of the tier: tier client, locks, reference worker, simulation."""
