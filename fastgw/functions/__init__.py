"""Function backends: handlers run by pools of worker processes and invoked with API Gateway events."""

# The account and region of the ARNs fastgw makes (a route's for lambda-authorizer, a function's context): here, so
# that a gateway without functions names them without importing the runtime (fastgw/gateway.py).
ACCOUNT_ID = "000000000000"
REGION = "local"
