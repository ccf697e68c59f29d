"""The whole service on one machine: the supervisor, the local AWS endpoint, its snapshots, the local EC2 host."""
