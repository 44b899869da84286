-- GTUBE in the body is refused at end of message with 550 5.7.1.
-- Run by tests/miltertest.rs as: miltertest -s gtube_rejected.lua -D port=PORT
local conn = mt.connect("inet:" .. port .. "@127.0.0.1", 20, 0.25)
if conn == nil then error("mt.connect() failed") end
if mt.negotiate(conn, nil, nil, nil) ~= nil then error("mt.negotiate() failed") end
-- The filter asks for what it uses, and no more.
if not mt.test_action(conn, SMFIF_ADDHDRS) then error("ADDHDRS not requested") end
if not mt.test_action(conn, SMFIF_CHGHDRS) then error("CHGHDRS not requested") end
if mt.test_action(conn, SMFIF_CHGBODY) then error("CHGBODY requested but never used") end
if not mt.test_option(conn, SMFIP_NR_HDR) then error("NR_HDR not requested") end

mt.macro(conn, SMFIC_CONNECT, "j", "mx.example.org", "{daemon_name}", "smtpd")
if mt.conninfo(conn, "client.example", "192.0.2.5") ~= nil then error("mt.conninfo() failed") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("mt.conninfo() unexpected reply") end
if mt.helo(conn, "client.example") ~= nil then error("mt.helo() failed") end

mt.macro(conn, SMFIC_MAIL, "i", "4XyZ12345")
if mt.mailfrom(conn, "<alice@example.org>") ~= nil then error("mt.mailfrom() failed") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("mt.mailfrom() unexpected reply") end
if mt.rcptto(conn, "<bob@example.net>") ~= nil then error("mt.rcptto() failed") end
if mt.header(conn, "From", "Alice <alice@example.org>") ~= nil then error("mt.header() failed") end
if mt.header(conn, "Subject", "test") ~= nil then error("mt.header() failed") end
if mt.eoh(conn) ~= nil then error("mt.eoh() failed") end
if mt.bodystring(conn, "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n") ~= nil then
    error("mt.bodystring() failed")
end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("mt.bodystring() unexpected reply") end
if mt.eom(conn) ~= nil then error("mt.eom() failed") end
if mt.getreply(conn) ~= SMFIR_REPLYCODE then error("mt.eom() did not answer with a reply code") end
if not mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.1", "Message rejected as spam") then
    error("wrong SMTP reply")
end
mt.disconnect(conn)
