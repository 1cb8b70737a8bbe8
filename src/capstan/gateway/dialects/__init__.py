"""Client dialects at the gateway's edge.

The gateway works in one internal shape, OpenAI Chat Completions (see
`capstan.gateway.providers.base`). A dialect translates a client's own wire format into that
shape on the way in and back out on the way out, so every upstream adapter serves every client.
`anthropic` serves Anthropic-SDK clients (`POST /v1/messages`) reaching non-Anthropic upstreams;
an Anthropic client reaching an Anthropic upstream skips the dialect and is passed through
natively (`capstan.gateway.providers.anthropic.messages`).
"""
