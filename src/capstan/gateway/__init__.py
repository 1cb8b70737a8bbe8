"""The data plane: OpenAI- and Anthropic-compatible endpoints in front of every provider."""
