"""Code every Lambda of the project shares, copied into each bundle beside `contract.py`.

- `config`: reading settings from the environment (the Twilio secret's variable);
- `twilio_credentials`: the Twilio secret, read through Powertools parameters (cached),
  with its secondary auth token during a rotation;
- `twilio_rest`: the Twilio REST client, built once per container (again after a rotation,
  and after a 401, from a fresh read of the secret);
- `bindings`: the bindings table (number <-> thing), read through Powertools (cached);
- `logs`: what may be logged about a message (masked numbers, never a body);
- `webhook_bounds`: what a request from Twilio may cost before its signature is checked
  (the message webhook's and the status callback's).
"""
