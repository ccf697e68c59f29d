"""The elastic fleet: scaling policy (pure), control loop over the EC2 API, and the local EC2 host."""
