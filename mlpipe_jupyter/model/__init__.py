"""What a pipeline is, computed from text alone: step specs, option parsing and its rules, code
analysis, the builder, the `.ipynb` reader, the DAG, cache keys and the pre-run checks.

Pure: importing it loads neither IPython nor jupyter_client nor docker (a test checks).
"""
