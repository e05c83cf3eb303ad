-- Whether the calling user's ACL lets it run each command given (redis.acl_check_cmd, Redis 7):
-- ARGV holds them one after the other, each as its number of words then its words. Returns the
-- words of the first refused, or 0 if none is; -1 where Redis cannot tell (before 7.0). Nothing
-- runs, so the keys named go in ARGV and need not share a cluster slot.
if not redis.acl_check_cmd then return -1 end
local i = 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local words = {unpack(ARGV, i + 1, i + n)}
  if not redis.acl_check_cmd(unpack(words)) then return words end
  i = i + 1 + n
end
return 0
