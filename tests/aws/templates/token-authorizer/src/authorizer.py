def handler(event, context):
    token = event["authorizationToken"]
    if token == "Bearer unauthorized":
        raise Exception("Unauthorized")  # API Gateway answers 401
    effect = "Allow" if token == "Bearer allow" else "Deny"
    return {
        "principalId": "user",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": event["methodArn"]}],
        },
        "context": {"tier": "gold"},
    }
