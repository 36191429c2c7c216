"""Owns the package overview: awsemu emulates the AWS APIs moto lacks (Security Hub, Detective) and holds the fault proxy.

It speaks the real AWS wire protocol (restJson1), so unmodified AWS SDKs
(aws-sdk-securityhub / aws-sdk-detective for Rust, boto3) can be pointed at it,
e.g. with ``AWS_ENDPOINT_URL_SECURITYHUB=http://127.0.0.1:PORT``. Python 3.11
standard library only. Run from the repository root with
``PYTHONPATH=loadtest/emulator``:

    python -m awsemu --port 0 --port-file PATH [--no-throttle] [--rate OP=RPS:BURST] ...
    python -m awsemu.faultproxy --listen-port 0 --port-file PATH --upstream URL [--record FILE] ...

Modules, one job each:

* ``server``      - HTTP plumbing shared by both servers: handler base (body
                    reading), server class, port file, ``serve()`` start-up
* ``errors``      - ``ApiError`` and the common restJson1 error shapes
* ``throttle``    - ``TokenBucket``/``Throttler``: per (account, region,
                    operation) rate limits; ``--rate`` specs
* ``state``       - ``StateStore`` (per service, account, region) and ``Stats``
* ``routing``     - ``Service`` base class, ``Route``/``Router``, credential
                    scope parsing and account resolution
* ``paging``      - ``NextToken`` encoding
* ``securityhub`` - BatchImportFindings, BatchUpdateFindings, GetFindings
* ``detective``   - ListGraphs, CreateGraph, StartInvestigation,
                    GetInvestigation, ListIndicators
* ``emulator``    - ``Emulator`` (the glue), the /_emulator/ control API, its
                    HTTP handler and server, ``build_emulator``
* ``__main__``    - the emulator's command line
* ``identity``    - what the fault proxy knows of a request (service,
                    operation, access key, region, protocol, app name)
* ``faults``      - fault rules, their state and the faults' responses
* ``record``      - the fault proxy's call log (``--record``)
* ``faultproxy``  - the fault proxy's handler, server and command line

State is per (service, account, region). The account of a request is, first
rule that applies (``routing.resolve_account``): the ``x-emulator-account-id``
header; a 12-digit access key id; the account registered for the access key id
with ``POST /_emulator/credentials {"access_key_id", "account_id"}`` (for the
``ASIA...`` keys of moto's STS AssumeRole); else 123456789012.

Adding a service: subclass ``routing.Service``, set ``name`` to the SigV4
signing name and ``bindings`` to its HTTP bindings (one handler method per
operation, named in snake case), add default rate limits to ``default_limits``
and add it to ``emulator.SERVICE_CLASSES``/``build_emulator``.
"""
