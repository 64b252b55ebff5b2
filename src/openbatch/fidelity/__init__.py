"""What makes a job look like it runs on AWS Batch: the container environment, image map,
consumable resources (scheduling side)."""
