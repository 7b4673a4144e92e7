-- wrk script: spreads wrk's threads over several host ports (one per Swarm
-- task, host-mode publishing), the way DNS round robin spreads clients.
-- PORTS="32768 32769 ..." in the environment; thread i talks to port i mod n.
local addrs = nil
local next_thread = 0

function setup(thread)
  if addrs == nil then
    addrs = {}
    for port in string.gmatch(os.getenv("PORTS") or "", "%d+") do
      for _, addr in ipairs(wrk.lookup("127.0.0.1", port)) do
        table.insert(addrs, addr)
        break
      end
    end
    assert(#addrs > 0, "PORTS is empty")
  end
  thread.addr = addrs[(next_thread % #addrs) + 1]
  next_thread = next_thread + 1
end
