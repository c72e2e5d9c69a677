"""Local, stateful emulator of the Mailchimp Marketing API v3 (the parts the toolkit uses).

Tests, the demo and benchmarks run against it over real HTTP instead of the
internet::

    from civimc_sandbox.emulator import Emulator, EmulatorServer, member_hash

    emu = Emulator(api_key="0123456789abcdef0123456789abcdef-us1")
    emu.add_list(list_id="a1b2c3d4e5", name="Newsletter")
    emu.add_member("a1b2c3d4e5", "ada@example.org", merge_fields={"FNAME": "Ada"})
    with EmulatorServer(emu) as server:
        ...  # point a client at server.base_url ("http://127.0.0.1:<port>/3.0")

Modules: ``state`` (Emulator: data and set-up helpers), ``writes`` (the API's
member write rules), ``views`` (cached filtered/sorted member views),
``render`` (JSON shapes, partial responses), ``api`` (routing, handlers),
``batches`` (/batches and result archives), ``faults`` (fault injection),
``problems`` (error documents), ``server`` (HTTP), ``spec`` (optional check of all
traffic against the Swagger spec), ``persist`` (the state file of ``--state``),
``__main__`` (CLI).

Choices where the real API's behaviour is unverified are listed in
``EMULATOR_CHOICES`` below (also shown by ``python -m civimc_sandbox.emulator --choices``).
"""

from civimc_sandbox.emulator.api import ApiResponse
from civimc_sandbox.emulator.faults import Faults
from civimc_sandbox.emulator.problems import ApiError
from civimc_sandbox.emulator.records import GARBLED_ABSENT, member_hash
from civimc_sandbox.emulator.server import EmulatorServer
from civimc_sandbox.emulator.spec import SpecChecker
from civimc_sandbox.emulator.state import DEFAULT_API_KEY, Emulator, RecordedRequest

EMULATOR_CHOICES = """\
- GET /members without `status` returns members of every status, archived and transactional
  included (real behaviour for archived unverified; query status=archived separately to be safe).
- count > 1000 is clamped to 1000 (emu.count_over_max = "error" gives a 400 instead).
- since_*/before_* filters are strict (> and <); times have whole-second precision.
- Unknown names in `fields` give 422 "Requested Fields Invalid" (emu.strict_fields = False to
  ignore); unknown names in `exclude_fields` are ignored (observed real behaviour).
- A member archived while unsubscribed/cleaned keeps its compliance state: reviving it as
  subscribed gives "Member In Compliance State".
- PUT on an archived member revives it with `status`, else `status_if_new`.
- PUT for a new member whose email does not hash to the URL's subscriber hash -> 400.
- Batch subscribe: reviving an archived member counts as a new member; repeated addresses in
  one request are processed in order (later copies hit "already a list member") unless
  skip_duplicate_check=true drops them; error items carry field "" unless a field applies.
- Forgotten (delete-permanent) addresses are refused for every status, pending included.
- /batches: pending -> started on the first GET, finished on the 2nd GET or after 2 s
  (emu.batch_polls_to_finish / emu.batch_finish_after); results are shuffled over files of 200.
- Faults never apply to GET /ping (faults.include_ping = True to change) or to result downloads.
- emu.archived_in_default_listing = False hides archived members from GET /members without
  `status` (the other possible real behaviour), so clients can be tested against both.
- A key with the emulator's 32 hex characters but another data centre gets 403 "Wrong
  Datacenter"; any other wrong key 401 "API Key Invalid".
- The Date header follows emu.clock, like the server clock it stands for.
- Fault "drop-after" handles the request, then drops the connection: the change is made but the
  client never hears of it (what makes retried writes interesting). Fault "cut" sends the
  headers and half the body, then drops the connection.
"""

__all__ = ["ApiError", "ApiResponse", "DEFAULT_API_KEY", "EMULATOR_CHOICES", "Emulator",
           "EmulatorServer", "Faults", "GARBLED_ABSENT", "RecordedRequest", "SpecChecker",
           "member_hash"]
