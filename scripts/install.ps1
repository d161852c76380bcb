<#
.SYNOPSIS
Install layerenv, build this machine's torch base, layer a project on it, say how to activate it.

.DESCRIPTION
Windows counterpart of scripts/install.sh. Installs layerenv with pipx when present, else into a
private virtualenv ($env:LAYERENV_TOOL_HOME, default $env:LOCALAPPDATA\layerenv-tool), then runs
`layerenv base` and `layerenv project`. Idempotent: a second run reuses the installed layerenv, the
base and the project venv. Exit codes: 0 done; 2 bad arguments (also when layerenv rejects its
input); 1 a step failed.

.EXAMPLE
powershell -ExecutionPolicy Bypass -File scripts\install.ps1 -Variant cu128 -Project C:\src\myproj
#>
[CmdletBinding()]
param(
    [string]$Variant = "",
    [string]$Python = "",
    [string]$Project = ".",
    [string]$Source = "",
    [switch]$NoProject,
    [switch]$Reinstall
)

Set-StrictMode -Version 3.0
# "Continue", not "Stop": Windows PowerShell 5.1 turns a native command's redirected stderr into a
# terminating error under "Stop". Native exit codes are checked through $LASTEXITCODE instead.
$ErrorActionPreference = "Continue"
$Prog = "install.ps1"

function Fail([int]$Code, [string]$Message) {
    [Console]::Error.WriteLine("${Prog}: error: $Message")
    exit $Code
}

function Test-Command([string]$Name) {
    return [bool](Get-Command $Name -ErrorAction SilentlyContinue)
}

if ($Project -eq "") { Fail 2 "-Project needs a non-empty path" }

# --- what to install as layerenv ------------------------------------------------------------------
if ($Source -eq "") {
    $Source = "layerenv"
    if ($PSScriptRoot) {
        # run from a checkout (scripts\install.ps1): install that checkout
        $checkout = Split-Path -Parent $PSScriptRoot
        $pyproject = Join-Path $checkout "pyproject.toml"
        if ((Test-Path -LiteralPath $pyproject -PathType Leaf) -and
            (Select-String -LiteralPath $pyproject -Pattern '^name = "layerenv"' -Quiet)) {
            $Source = (Resolve-Path -LiteralPath $checkout -ErrorAction Stop).Path
        }
    }
} elseif (Test-Path -LiteralPath $Source -PathType Container) {
    $Source = (Resolve-Path -LiteralPath $Source -ErrorAction Stop).Path
}

# --- an interpreter for layerenv itself -----------------------------------------------------------
$toolPython = @()
if ($Python -match '[\\/]' -or $Python -match '\.exe$') {
    if (-not (Test-Path -LiteralPath $Python -PathType Leaf)) { Fail 2 "-Python '$Python' is not a file" }
    $toolPython = @($Python)
} elseif (Test-Command "py") {
    # the Python launcher: py -3.12, or the newest Python 3
    if ($Python -match '^\d+(\.\d+)*$') { $toolPython = @("py", "-$Python") } else { $toolPython = @("py", "-3") }
} elseif (Test-Command "python") {
    $toolPython = @("python")
}

function Invoke-ToolPython([string[]]$Arguments) {
    $exe = $toolPython[0]
    $rest = @($toolPython | Select-Object -Skip 1) + $Arguments
    & $exe @rest | Out-Host
    return $LASTEXITCODE
}

# --- 1. install layerenv --------------------------------------------------------------------------
$layerenv = ""
$binDir = ""
if (Test-Command "pipx") {
    $installed = @(& pipx list --short 2>$null) -match '^layerenv '
    if (-not $Reinstall -and $installed) {
        Write-Output "layerenv: already installed with pipx ($installed)"
    } else {
        Write-Output "layerenv: installing $Source with pipx"
        & pipx install --force $Source
        if ($LASTEXITCODE -ne 0) { Fail 1 "pipx install $Source failed" }
    }
    $binDir = (& pipx environment --value PIPX_BIN_DIR 2>$null | Select-Object -First 1)
    if ($binDir -and (Test-Path -LiteralPath (Join-Path $binDir "layerenv.exe"))) {
        $layerenv = Join-Path $binDir "layerenv.exe"
    } else {
        $found = Get-Command "layerenv" -ErrorAction SilentlyContinue
        if (-not $found) { Fail 1 "pipx installed layerenv but its command was not found; run 'pipx ensurepath'" }
        $layerenv = $found.Source
        $binDir = Split-Path -Parent $layerenv
    }
} else {
    $toolHome = [Environment]::GetEnvironmentVariable("LAYERENV_TOOL_HOME")
    if (-not $toolHome) {
        $localAppData = [Environment]::GetEnvironmentVariable("LOCALAPPDATA")
        if (-not $localAppData) { Fail 1 "LOCALAPPDATA is not set; set LAYERENV_TOOL_HOME to where layerenv should live" }
        $toolHome = Join-Path $localAppData "layerenv-tool"
    }
    $binDir = Join-Path $toolHome "Scripts"
    $venvPython = Join-Path $binDir "python.exe"
    $layerenv = Join-Path $binDir "layerenv.exe"
    $stamp = Join-Path $toolHome "layerenv-source.txt"
    $upToDate = $false
    if (-not $Reinstall -and (Test-Path -LiteralPath $layerenv) -and (Test-Path -LiteralPath $stamp) -and
        ((Get-Content -LiteralPath $stamp -Raw).Trim() -eq $Source)) {
        $version = & $layerenv --version 2>$null
        if ($LASTEXITCODE -eq 0) {
            $upToDate = $true
            Write-Output "layerenv: already installed in $toolHome ($version)"
        }
    }
    if (-not $upToDate) {
        if (-not (Test-Path -LiteralPath $venvPython)) {
            if ($toolPython.Count -eq 0) {
                Fail 1 "no Python found (neither 'py' nor 'python'); install Python 3.10 or newer, or pass -Python PATH"
            }
            $code = Invoke-ToolPython @("-c", "import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)")
            if ($code -ne 0) { Fail 1 "$($toolPython -join ' ') is not Python 3.10 or newer, which layerenv needs; pass -Python PATH" }
            Write-Output "layerenv: creating $toolHome with $($toolPython -join ' ')"
            $code = Invoke-ToolPython @("-m", "venv", $toolHome)
            if ($code -ne 0) { Fail 1 "could not create a virtualenv at $toolHome" }
        }
        Write-Output "layerenv: installing $Source into $toolHome"
        Remove-Item -LiteralPath $stamp -Force -ErrorAction SilentlyContinue
        & $venvPython -m pip install --quiet --disable-pip-version-check --upgrade $Source
        if ($LASTEXITCODE -ne 0) { Fail 1 "pip install $Source into $toolHome failed" }
        if (-not (Test-Path -LiteralPath $layerenv)) { Fail 1 "$layerenv is missing after installing $Source" }
        Set-Content -LiteralPath $stamp -Value $Source -Encoding UTF8 -ErrorAction Stop
    }
}

$pathDirs = @([Environment]::GetEnvironmentVariable("PATH") -split ';' | ForEach-Object { $_.TrimEnd('\') })
if ($pathDirs -notcontains $binDir.TrimEnd('\')) {
    Write-Output "note: $binDir is not on PATH; add it to run 'layerenv' directly, e.g.:"
    Write-Output "  [Environment]::SetEnvironmentVariable('Path', `"$binDir;`" + [Environment]::GetEnvironmentVariable('Path', 'User'), 'User')"
}

# --- 2. the machine's base; 3. the project --------------------------------------------------------
function Invoke-Layerenv([string[]]$Arguments) {
    & $layerenv @Arguments
    $code = $LASTEXITCODE
    if ($code -ne 0) {
        if ($code -ne 2) { $code = 1 }
        Fail $code "layerenv $($Arguments[0]) failed (exit $code); see its message above"
    }
}

$baseArgs = @("base")
if ($Variant) { $baseArgs += @("--variant", $Variant) }
if ($Python) { $baseArgs += @("--python", $Python) }
Invoke-Layerenv $baseArgs

if ($NoProject) {
    Write-Output "layer a project on it with: layerenv project PATH"
    exit 0
}

if (-not (Test-Path -LiteralPath $Project -PathType Container)) { Fail 2 "-Project '$Project' is not a directory" }
$projectPath = (Resolve-Path -LiteralPath $Project -ErrorAction Stop).Path
$projectArgs = @("project", $projectPath)
if ($Python) { $projectArgs += @("--python", $Python) }
# `layerenv project` has no --variant: the setting keeps it on the base just built
if ($Variant) { $env:LAYERENV_VARIANT = $Variant }
Invoke-Layerenv $projectArgs

Write-Output ""
Write-Output "run without activating: cd `"$projectPath`"; layerenv run -- python ..."
Write-Output "activate with: $(Join-Path $projectPath '.venv\Scripts\Activate.ps1')"
exit 0
