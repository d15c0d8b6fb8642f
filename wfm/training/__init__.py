"""Training systems (LightningModules), schedules and callbacks."""
