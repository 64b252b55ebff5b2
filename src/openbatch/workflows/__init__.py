"""Native workflows: a DAG of Batch jobs defined once (YAML/JSON), run, watched, redriven and scheduled."""
