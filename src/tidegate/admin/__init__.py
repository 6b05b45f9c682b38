"""Commands an operator runs on the server's own data directory: API tokens, the audit log, a
local yank. `args` builds their parsers (importing nothing heavy); `commands` runs them."""
