"""What the stages run on: storage (local, S3, Hub URIs), the executors that own Ray, fault injection,
console noise and tables.
"""
