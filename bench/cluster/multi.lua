-- wrk script for the cluster: spreads wrk's threads over the tasks' own
-- addresses on the overlay network (ADDRS="10.0.1.3 10.0.1.4 ...", port
-- 8000), the way DNS round robin spreads clients; thread i -> task i mod n.
local addrs = nil
local next_thread = 0

function setup(thread)
  if addrs == nil then
    addrs = {}
    for ip in string.gmatch(os.getenv("ADDRS") or "", "%S+") do
      for _, addr in ipairs(wrk.lookup(ip, "8000")) do
        table.insert(addrs, addr)
        break
      end
    end
    assert(#addrs > 0, "ADDRS is empty")
  end
  thread.addr = addrs[(next_thread % #addrs) + 1]
  next_thread = next_thread + 1
end
