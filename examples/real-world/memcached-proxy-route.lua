-- Proxy configuration for memcached-proxy-repro.py: every get is answered by a fixed value
-- (no backend needed).
function mcp_config_pools(old)
    return {}
end

function mcp_config_routes(pools)
    mcp.attach(mcp.CMD_GET, function(r)
        return "VALUE " .. r:key() .. " 0 1\r\nv\r\nEND\r\n"
    end)
end
