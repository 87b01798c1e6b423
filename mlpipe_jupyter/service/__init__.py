"""The pipeline service: publish notebooks as versioned pipelines, run them over REST in a
queue of run processes, and on cron schedules."""
