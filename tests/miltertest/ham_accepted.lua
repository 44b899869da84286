-- A clean message is accepted with X-Spam-Status: No, no X-Spam-Flag, and the forged
-- X-Spam-Flag headers it arrived with are deleted. Two messages on one connection.
local conn = mt.connect("inet:" .. port .. "@127.0.0.1", 20, 0.25)
if conn == nil then error("mt.connect() failed") end
if mt.conninfo(conn, "client.example", "192.0.2.6") ~= nil then error("mt.conninfo() failed") end

for i = 1, 2 do
    if mt.mailfrom(conn, "<alice@example.org>") ~= nil then error("mt.mailfrom() failed") end
    if mt.rcptto(conn, "<bob@example.net>") ~= nil then error("mt.rcptto() failed") end
    if mt.header(conn, "From", "alice@example.org") ~= nil then error("mt.header() failed") end
    if mt.header(conn, "X-Spam-Flag", "NO") ~= nil then error("mt.header() failed") end
    if mt.header(conn, "Subject", "lunch " .. i) ~= nil then error("mt.header() failed") end
    if mt.header(conn, "X-Spam-Flag", "NO") ~= nil then error("mt.header() failed") end
    if mt.eoh(conn) ~= nil then error("mt.eoh() failed") end
    if mt.bodystring(conn, "Shall we meet at noon?\r\n") ~= nil then error("mt.bodystring() failed") end
    if mt.eom(conn) ~= nil then error("mt.eom() failed") end
    if mt.getreply(conn) ~= SMFIR_ACCEPT then error("mt.eom() did not accept") end
    if not mt.eom_check(conn, MT_HDRADD, "X-Spam-Score", "0.0") then error("X-Spam-Score not added") end
    if not mt.eom_check(conn, MT_HDRADD, "X-Spam-Status") then error("X-Spam-Status not added") end
    if mt.eom_check(conn, MT_HDRADD, "X-Spam-Flag") then error("X-Spam-Flag added to ham") end
    local status = mt.getheader(conn, "X-Spam-Status", 0)
    if status == nil or string.sub(status, 1, 4) ~= "No, " then
        error("X-Spam-Status is " .. tostring(status))
    end
    if not (mt.eom_check(conn, MT_HDRDELETE, "X-Spam-Flag") or mt.eom_check(conn, MT_HDRCHANGE, "X-Spam-Flag")) then
        error("forged X-Spam-Flag not removed")
    end
end
mt.disconnect(conn)
