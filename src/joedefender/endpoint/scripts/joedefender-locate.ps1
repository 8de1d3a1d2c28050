<#
.SYNOPSIS
    joedefender: list the Defender quarantine entries that may hold a file. Read-only.

.DESCRIPTION
    Run by the joedefender connector through Microsoft Defender for Endpoint live response
    (RunScript, as SYSTEM). Contract: joedefender.endpoint.contract in the joedefender package.

    Lists the encrypted files under the quarantine's Entries and ResourceData folders (path and
    size, newest first, at most 64 of each), and prints the Entries files themselves (still
    encrypted, as hex; the newest first, each at most 64 KiB, together at most 256 KiB), so the
    connector reads on its own side which ResourceData file holds the alert's evidence without
    an action to fetch them (it fetches one listed without its bytes with GetFile; when none can
    be read, it takes the newest ResourceData files). It then fetches those, decodes them and
    keeps the one whose SHA-256 matches. This script writes, restores, decodes and excludes
    nothing, and needs no compiled code. An Entries folder it cannot list leaves the list empty;
    an Entries file it cannot read whole is listed without its bytes.

    Constrained Language Mode: it uses only cmdlets (Join-Path, Test-Path, Get-ChildItem,
    Get-Content, Where-Object, Sort-Object, Select-Object, ConvertTo-Json, Write-Output),
    hashtables cast to [pscustomobject] or splatted, [string] casts, the -f and -join operators
    and property reads; no Add-Type, no New-Object, no .NET method call. It reports the language
    mode it ran in.

    -JobId is only for the record (live response logs the arguments); it is [A-Za-z0-9-].

    Output: exactly one JSON line on stdout,
      {"joedefender":1,"status":"located|not_found|error","languageMode":"...",
       "resources":[{"path":"...","size":N}],"entries":[{"path":"...","size":N,"hex":"..."}],
       "message":"..."}  ("hex" only for an Entries file printed whole)
    Exit code: 0 located, 2 not found, 1 error.
#>
[CmdletBinding(PositionalBinding = $false)]
param(
    [ValidateLength(1, 64)]
    [ValidatePattern('^[A-Za-z0-9-]{1,64}\z')]
    [string]$JobId = ''
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

$QuarantineData = Join-Path $env:ProgramData 'Microsoft\Windows Defender\Quarantine\ResourceData'
$QuarantineEntries = Join-Path $env:ProgramData 'Microsoft\Windows Defender\Quarantine\Entries'
$Limit = 64
$EmbedEach = 65536
$EmbedTotal = 262144
# Windows PowerShell reads bytes with -Encoding Byte, PowerShell 6 and later with -AsByteStream.
$ByteRead = @{ Encoding = 'Byte' }
if ($PSVersionTable.PSVersion.Major -ge 6) {
    $ByteRead = @{ AsByteStream = $true }
}
$LanguageMode = [string]$ExecutionContext.SessionState.LanguageMode
$Status = 'error'
$Message = ''
$Resources = @()
$Entries = @()

try {
    if (Test-Path -LiteralPath $QuarantineData) {
        $files = @(
            Get-ChildItem -LiteralPath $QuarantineData -Recurse -File -Force |
                Where-Object { $_.Name -match '^[0-9A-Fa-f]{40}$' } |
                Sort-Object -Property LastWriteTimeUtc -Descending |
                Select-Object -First $Limit
        )
        foreach ($file in $files) {
            $Resources += [pscustomobject]@{ path = $file.FullName; size = $file.Length }
        }
    }
    try {
        if (Test-Path -LiteralPath $QuarantineEntries) {
            $files = @(
                Get-ChildItem -LiteralPath $QuarantineEntries -File -Force |
                    Where-Object { $_.Name -match '^\{[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\}$' } |
                    Sort-Object -Property LastWriteTimeUtc -Descending |
                    Select-Object -First $Limit
            )
            $embedded = 0
            foreach ($file in $files) {
                $hex = $null
                if ($file.Length -le $EmbedEach -and ($embedded + $file.Length) -le $EmbedTotal) {
                    try {
                        # One array of bytes (-ReadCount 0), or bytes one by one: foreach takes either.
                        $read = Get-Content -LiteralPath $file.FullName -ReadCount 0 @ByteRead
                        $digits = foreach ($byte in $read) { '{0:X2}' -f $byte }
                        $printed = [string](@($digits) -join '')
                        if ($printed.Length -eq 2 * $file.Length) {
                            $hex = $printed
                        }
                    }
                    catch {
                        $hex = $null
                    }
                }
                if ($null -ne $hex) {
                    $embedded += $file.Length
                    $Entries += [pscustomobject]@{ path = $file.FullName; size = $file.Length; hex = $hex }
                }
                else {
                    $Entries += [pscustomobject]@{ path = $file.FullName; size = $file.Length }
                }
            }
        }
    }
    catch {
        $Entries = @()
    }
    if ($Resources.Count -gt 0) {
        $Status = 'located'
    }
    else {
        $Status = 'not_found'
        $Message = 'the quarantine holds no ResourceData file'
    }
}
catch {
    $Status = 'error'
    $Message = 'failed: ' + $_.Exception.Message
}

$document = [pscustomobject]@{
    joedefender  = 1
    status       = $Status
    languageMode = $LanguageMode
    resources    = $Resources
    entries      = $Entries
    message      = $Message
}

$exitCode = 1
if ($Status -eq 'located') {
    $exitCode = 0
}
elseif ($Status -eq 'not_found') {
    $exitCode = 2
}
Write-Output ($document | ConvertTo-Json -Compress -Depth 4)
exit $exitCode
