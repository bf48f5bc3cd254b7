"""CDK constructs and the stack that composes them, one construct per logical unit."""
