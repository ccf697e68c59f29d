"""The whole service on one machine: the supervisor, the local AWS endpoint (moto), its snapshots and the local EC2 host."""
