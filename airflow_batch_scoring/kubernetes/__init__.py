"""The Kubernetes runtime: the replicas of a scoring job as the pods of one Indexed Job."""
