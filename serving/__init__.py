"""Server side: the tensor contract, repository builder, Triton launcher, python-backend models."""
