export const handler = async (event) => ({
  statusCode: 200,
  body: JSON.stringify({ message: "hello", authorizer: event.requestContext.authorizer ?? null }),
});
