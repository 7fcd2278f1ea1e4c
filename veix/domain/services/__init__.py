"""Use cases: orchestrate the domain rules over the ports, one transaction each."""
