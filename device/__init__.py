"""Harnesses run on the GPU machine (the `device` tool): what can be proved on a GPU without
a GPU build of MXNet. Their logs are in `device/notes/`."""
