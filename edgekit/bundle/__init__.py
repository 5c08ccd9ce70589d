"""What ships: the artifact manifest, the report, the reproducible bundle and the example apps in it."""
