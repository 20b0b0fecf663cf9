-- Argo CD health of a kubegym.io Experiment, from the status the kubegym operator writes:
-- phase, reason, message, conditions (Running, Suspended, Succeeded, Failed) and
-- observedGeneration. Lua 5.1 with the base and table libraries only, as Argo CD runs it
-- (no string or math library unless useOpenLibs is set).
local kind = "Experiment"

-- Pending reasons that need a person (wrong image, missing Secret): the operator fails the
-- run if they persist, and Argo CD should show them at once rather than as Progressing.
local stuck = {
  ImagePullFailed = true,
  SecretNotFound = true,
  CreateContainerConfigError = true,
  ContainerCannotRun = true,
}

local function condition(status, kind_)
  if type(status.conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind_ and c.status == "True" then
      return c
    end
  end
  return nil
end

local function explain(reason, message, fallback)
  local text = message
  if text == nil or text == "" then
    text = fallback
  end
  if reason ~= nil and reason ~= "" then
    return reason .. ": " .. text
  end
  return text
end

local hs = {}
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the kubegym operator to reconcile the " .. kind
  return hs
end

local generation = obj.metadata.generation
local observed = status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the kubegym operator to observe generation " .. generation ..
    " (the status is of generation " .. observed .. ")"
  return hs
end

local phase = status.phase
local failed = condition(status, "Failed")
if phase == "Failed" or failed ~= nil then
  local c = failed or {}
  hs.status = "Degraded"
  hs.message = explain(status.reason or c.reason, status.message or c.message, kind .. " failed")
  return hs
end
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = explain(nil, status.message, kind .. " succeeded")
  return hs
end
if phase == "Suspended" or condition(status, "Suspended") ~= nil then
  hs.status = "Suspended"
  hs.message = explain(status.reason, status.message, kind .. " is suspended")
  return hs
end
if phase == "Pending" or phase == "Running" then
  if phase == "Pending" and stuck[status.reason] then
    hs.status = "Degraded"
  else
    hs.status = "Progressing"
  end
  hs.message = explain(status.reason, status.message, kind .. " is " .. phase)
  return hs
end

hs.status = "Unknown"
hs.message = "Unknown phase " .. tostring(phase) .. " of the " .. kind
return hs
