"""Pipeline stages: pure kernels plus one thin Prefect task per stage."""
