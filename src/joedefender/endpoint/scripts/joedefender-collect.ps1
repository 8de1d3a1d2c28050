<#
.SYNOPSIS
    joedefender: recover ONE quarantined file, by its SHA-256, for a sandbox analysis.

.DESCRIPTION
    Run by the joedefender connector through Microsoft Defender for Endpoint live response
    (RunScript, as SYSTEM). Contract: joedefender.endpoint.contract in the joedefender package.
    The connector tries the read-only joedefender-locate.ps1 first; this script is its second
    strategy (Collect) and, only where the user allowed it, its third (Restore).

    Every argument is made of [A-Za-z0-9-] only, so it means the same however live response
    tokenises Args; the original path arrives as the hex of its UTF-8 bytes.

    Collect mode
      1. Makes C:\ProgramData\joedefender (SYSTEM and Administrators only), or checks the one
         that exists: any local user may create folders in ProgramData, so one that someone
         else made (owned by another account), or a junction, is never used (step 5).
      2. Deletes job folders under it older than 24 hours, and any Defender exclusion left for
         them.
      3. Creates C:\ProgramData\joedefender\<JobId> now (the connector chose the name at
         random), owned by and readable by SYSTEM only; one that exists already is refused.
      4. Decodes the Defender quarantine in memory (RC4 with Defender's public key, then the
         BackupRead stream layout) and hashes each entry's DATA stream. Nothing is restored.
         Writes the match XOR-defanged (public key below; not a secret, it keeps the sample
         inert on disk) to <job folder>\sample.bin, for a GetFile in the same action.
      5. A folder that is not its own ends the run with status "unsafe_folder" and the reason;
         nothing is written, deleted or changed in it.
    Restore mode (opt-in: it takes the entry out of the quarantine)
      Adds a temporary exclusion for the job folder, restores that one path with MpCmdRun into
      <job folder>\restore (SYSTEM only), checks the ACL of each restored file itself, keeps
      the one whose hash matches (defanged), and in a finally deletes every restored plaintext
      BEFORE it removes the exclusion (else real-time protection would detect or lock it).
    Cleanup mode deletes the job folder and any exclusion for it (after the same check of the
    work root).

    Output: exactly one JSON line on stdout,
      {"joedefender":1,"status":"found|not_found|error|cleaned|unsafe_folder","sha256":...,
       "size":...,"path":...,"source":"quarantine|restore"|null,"message":"..."}
    Exit code: 0 found or cleaned, 2 not found, 1 error.

    Hygiene: no secrets, no network access, no dynamic code from arguments. Threat names and
    paths come from the attacker's side: they are only ever data.
#>
[CmdletBinding(PositionalBinding = $false)]
param(
    [ValidateSet('Collect', 'Restore', 'Cleanup')]
    [string]$Mode = '',

    [ValidateLength(1, 64)]
    [ValidatePattern('^[A-Za-z0-9-]{1,64}\z')]
    [string]$JobId = '',

    [ValidateLength(64, 64)]
    [ValidatePattern('^[0-9a-fA-F]{64}\z')]
    [string]$Sha256 = '',

    [ValidateLength(8, 6144)]
    [ValidatePattern('^(?:[0-9a-fA-F]{2}){4,3072}\z')]
    [string]$OriginalPathHex = ''
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

$WorkRoot = 'C:\ProgramData\joedefender'
$SampleFileName = 'sample.bin'
$QuarantineData = Join-Path $env:ProgramData 'Microsoft\Windows Defender\Quarantine\ResourceData'
$ProgramFiles64 = [System.Environment]::GetEnvironmentVariable('ProgramW6432')
if (-not $ProgramFiles64) {
    $ProgramFiles64 = $env:ProgramFiles
}
$MpCmdRun = Join-Path $ProgramFiles64 'Windows Defender\MpCmdRun.exe'
$MaxFileBytes = 536870912
$StaleAfterHours = 24
$ExclusionWaitSeconds = 60
$SystemSid = 'S-1-5-18'
$AdministratorsSid = 'S-1-5-32-544'
# What the decoded -OriginalPathHex must be: an absolute drive path; no wildcard characters, so
# MpCmdRun cannot match several entries; no double quote or trailing backslash.
$OriginalPathPattern = '^[A-Za-z]:\\(?:[^\x00-\x1f"*?<>|:/\[\]\\]+\\)*[^\x00-\x1f"*?<>|:/\[\]\\]+\z'

# Defender's quarantine RC4 key (public: it is in mpengine.dll and in every open-source decoder).
$DefenderRc4KeyHex = '1E87781B8DBAA844CE69702C0C78B786A3F623B738F5EDF9AF83530FB3FC54FAA21EB9CF1331FD0F0DA954F687CB9E18279697900E53FB317C9CBCE48E23D05371ECC15951B8F3649D7CA33ED68DC9047E82C9BAAD9799D0D458CB847CA9FFBE3C8A775233557DDE13A8B14087CC1BC8F10F6ECDD083A959CFF84A9D1D50755E3E191818AF23E2293558766D2C07E25712B2CA0B535ED8F6C56CE73D24BDD0291771861A54B4C285A9A3DB7ACA6D224AEACD621DB9F2A22ED1E9E11D75BED7DC0ECB0A8E68A2FF1263408DC808DFFD164B116774CD0B9B8D05411ED6262E429BA495676B8398DB2F35D3C1B9CED52636F2765E1A95CB7CA4C3DDABDDBFF38253'

# joedefender's defang key (public, joedefender.endpoint.contract.DEFANG_KEY): sample.bin is the
# payload XOR this key, repeated, from offset 0.
$DefangKeyHex = '5fb389bf97028e347a9c1f073a4ad2f7bad7b7b934fa23e7d86fa685a3e1742e'

# Byte work in compiled code: a PowerShell loop would need hours for a large quarantine.
# C# 5 (what Windows PowerShell 5.1 compiles); no network, no process, no reflection.
$CollectorSource = @'
using System;
using System.IO;
using System.Security.Cryptography;

namespace JoeDefender
{
    public sealed class Payload
    {
        public string Sha256;
        public long Size;
    }

    internal sealed class Rc4
    {
        private readonly byte[] s = new byte[256];
        private int x;
        private int y;

        public Rc4(byte[] key)
        {
            for (int k = 0; k < 256; k++)
            {
                s[k] = (byte)k;
            }
            int j = 0;
            for (int k = 0; k < 256; k++)
            {
                j = (j + s[k] + key[k % key.Length]) & 0xFF;
                byte t = s[k];
                s[k] = s[j];
                s[j] = t;
            }
        }

        public void Apply(byte[] buffer, int count)
        {
            for (int k = 0; k < count; k++)
            {
                x = (x + 1) & 0xFF;
                y = (y + s[x]) & 0xFF;
                byte t = s[x];
                s[x] = s[y];
                s[y] = t;
                buffer[k] ^= s[(s[x] + s[y]) & 0xFF];
            }
        }
    }

    internal sealed class Reader : IDisposable
    {
        private readonly FileStream file;
        private readonly Rc4 rc4;

        public Reader(string path, byte[] rc4Key)
        {
            file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 65536, FileOptions.SequentialScan);
            rc4 = rc4Key == null ? null : new Rc4(rc4Key);
            Remaining = file.Length;
        }

        public long Remaining { get; private set; }

        // Reads count bytes into buffer[0..count), fewer only at the end of the file.
        public int Read(byte[] buffer, int count)
        {
            int total = 0;
            while (total < count)
            {
                int n = file.Read(buffer, total, count - total);
                if (n <= 0)
                {
                    break;
                }
                total += n;
            }
            if (rc4 != null)
            {
                rc4.Apply(buffer, total);
            }
            Remaining -= total;
            return total;
        }

        public void Dispose()
        {
            file.Dispose();
        }
    }

    public static class Collector
    {
        private const int ChunkSize = 1048576;
        private const int StreamHeaderSize = 20;
        private const uint BackupData = 1;
        private const uint MaxStreamId = 11;

        public static byte[] FromHex(string hex)
        {
            byte[] bytes = new byte[hex.Length / 2];
            for (int k = 0; k < bytes.Length; k++)
            {
                bytes[k] = Convert.ToByte(hex.Substring(2 * k, 2), 16);
            }
            return bytes;
        }

        // The DATA stream of an RC4-encrypted BackupRead blob (a ResourceData file): hashed, and
        // written defanged to defangedOut unless that is empty. Null if the blob has no DATA
        // stream or is not a quarantine file.
        public static Payload FromQuarantine(string path, byte[] rc4Key, string defangedOut, byte[] defangKey, HashAlgorithm hasher)
        {
            using (Reader reader = new Reader(path, rc4Key))
            {
                byte[] header = new byte[StreamHeaderSize];
                byte[] buffer = new byte[ChunkSize];
                // WIN32_STREAM_ID: DWORD id, DWORD attributes, QWORD size, DWORD name size, name.
                while (reader.Read(header, StreamHeaderSize) == StreamHeaderSize)
                {
                    uint id = BitConverter.ToUInt32(header, 0);
                    long size = BitConverter.ToInt64(header, 8);
                    uint nameSize = BitConverter.ToUInt32(header, 16);
                    if (id == 0 || id > MaxStreamId || size < 0 || nameSize > reader.Remaining || size > reader.Remaining - nameSize)
                    {
                        return null;
                    }
                    Skip(reader, nameSize, buffer);
                    if (id == BackupData)
                    {
                        return Pump(reader, size, defangedOut, defangKey, hasher, buffer);
                    }
                    Skip(reader, size, buffer);
                }
                return null;
            }
        }

        // A plain file (restored by MpCmdRun): hashed, and written defanged unless defangedOut is empty.
        public static Payload FromPlainFile(string path, string defangedOut, byte[] defangKey, HashAlgorithm hasher)
        {
            using (Reader reader = new Reader(path, null))
            {
                return Pump(reader, reader.Remaining, defangedOut, defangKey, hasher, new byte[ChunkSize]);
            }
        }

        private static void Skip(Reader reader, long count, byte[] buffer)
        {
            while (count > 0)
            {
                int want = (int)Math.Min(count, (long)buffer.Length);
                if (reader.Read(buffer, want) != want)
                {
                    throw new InvalidDataException("truncated stream");
                }
                count -= want;
            }
        }

        private static Payload Pump(Reader reader, long size, string defangedOut, byte[] defangKey, HashAlgorithm hasher, byte[] buffer)
        {
            hasher.Initialize();
            FileStream output = null;
            try
            {
                if (!String.IsNullOrEmpty(defangedOut))
                {
                    output = new FileStream(defangedOut, FileMode.CreateNew, FileAccess.Write, FileShare.None);
                }
                long done = 0;
                while (done < size)
                {
                    int want = (int)Math.Min(size - done, (long)buffer.Length);
                    if (reader.Read(buffer, want) != want)
                    {
                        throw new InvalidDataException("truncated stream");
                    }
                    hasher.TransformBlock(buffer, 0, want, null, 0);
                    if (output != null)
                    {
                        for (int k = 0; k < want; k++)
                        {
                            buffer[k] ^= defangKey[(int)((done + k) % defangKey.Length)];
                        }
                        output.Write(buffer, 0, want);
                    }
                    done += want;
                }
                hasher.TransformFinalBlock(new byte[0], 0, 0);
                Payload payload = new Payload();
                payload.Sha256 = BitConverter.ToString(hasher.Hash).Replace("-", "").ToLowerInvariant();
                payload.Size = size;
                return payload;
            }
            finally
            {
                if (output != null)
                {
                    output.Dispose();
                }
            }
        }
    }
}
'@

$script:Outcome = $null
$script:Notes = New-Object 'System.Collections.Generic.List[string]'
$script:UnsafeFolder = ''

function Add-Note {
    param([string]$Text)
    $script:Notes.Add($Text)
}

function Set-Outcome {
    param(
        [string]$Status,
        [string]$Message = '',
        [object]$Hash = $null,
        [object]$Size = $null,
        [object]$Path = $null,
        [object]$Source = $null
    )
    $script:Outcome = [ordered]@{
        joedefender = 1
        status      = $Status
        sha256      = $Hash
        size        = $Size
        path        = $Path
        source      = $Source
        message     = $Message
    }
}

function Format-OutputLine {
    # The one stdout line; notes gathered after the outcome was set (by finally blocks) included.
    $parts = @(@($script:Outcome.message) + @($script:Notes) | Where-Object { $_ })
    $text = $parts -join '; '
    if ($text.Length -gt 1000) {
        $text = $text.Substring(0, 1000)
    }
    $script:Outcome.message = $text
    return ($script:Outcome | ConvertTo-Json -Compress)
}

function Get-JobFolder {
    return (Join-Path $WorkRoot $JobId)
}

function New-SystemOnlySecurity {
    # SYSTEM only (and Administrators for the work root), SYSTEM the owner, inheritance from
    # ProgramData cut (any local user may write there).
    param([bool]$AllowAdministrators)
    $security = New-Object System.Security.AccessControl.DirectorySecurity
    $security.SetAccessRuleProtection($true, $false)
    $security.SetOwner((New-Object System.Security.Principal.SecurityIdentifier($SystemSid)))
    $sids = @($SystemSid)
    if ($AllowAdministrators) {
        $sids += $AdministratorsSid
    }
    foreach ($sid in $sids) {
        $identity = New-Object System.Security.Principal.SecurityIdentifier($sid)
        $rule = New-Object System.Security.AccessControl.FileSystemAccessRule(
            $identity,
            [System.Security.AccessControl.FileSystemRights]::FullControl,
            [System.Security.AccessControl.InheritanceFlags]'ContainerInherit, ObjectInherit',
            [System.Security.AccessControl.PropagationFlags]::None,
            [System.Security.AccessControl.AccessControlType]::Allow)
        $security.AddAccessRule($rule)
    }
    return $security
}

function Stop-UnsafeFolder {
    # A folder the script must write to is not its own: the run ends with status unsafe_folder
    # and this reason (after the folder's path), and nothing is done in it.
    param([string]$Folder, [string]$Reason)
    $script:UnsafeFolder = "$Folder $Reason"
    throw $script:UnsafeFolder
}

function Get-FolderItem {
    # The folder itself, or $null: a junction is found even when what it leads to is gone.
    param([string]$Folder)
    return (Get-Item -LiteralPath $Folder -Force -ErrorAction SilentlyContinue)
}

function Assert-TrustedOwner {
    # Not a link, and owned by SYSTEM or Administrators: no other account made it.
    param([string]$Folder)
    $item = Get-FolderItem -Folder $Folder
    if ($null -eq $item -or -not $item.PSIsContainer) {
        Stop-UnsafeFolder -Folder $Folder -Reason 'is not a folder; refusing to use it'
    }
    if ($item.Attributes -band [System.IO.FileAttributes]::ReparsePoint) {
        Stop-UnsafeFolder -Folder $Folder -Reason 'is a reparse point (a junction or link); refusing to use it'
    }
    $owner = $item.GetAccessControl().GetOwner([System.Security.Principal.SecurityIdentifier]).Value
    if ($owner -ne $SystemSid -and $owner -ne $AdministratorsSid) {
        Stop-UnsafeFolder -Folder $Folder -Reason "is owned by $owner, not SYSTEM or Administrators: someone else made it; refusing to use it"
    }
    return $item
}

function Assert-OwnFolder {
    # The folder is the script's own: a trusted owner, and no access rule for anyone but
    # SYSTEM (and Administrators, for the work root), inherited or not.
    param([string]$Folder, [bool]$AllowAdministrators)
    $item = Assert-TrustedOwner -Folder $Folder
    $acl = $item.GetAccessControl()
    foreach ($rule in @($acl.GetAccessRules($true, $true, [System.Security.Principal.SecurityIdentifier]))) {
        $sid = $rule.IdentityReference.Value
        if ($sid -ne $SystemSid -and -not ($AllowAdministrators -and $sid -eq $AdministratorsSid)) {
            Stop-UnsafeFolder -Folder $Folder -Reason "grants access to $sid; refusing to use it"
        }
    }
}

function New-ProtectedFolder {
    # Created now, with its owner and ACL in one call, so there is no moment where it inherits a
    # looser one, then checked. One that exists already was not made by this run (the job
    # folder's name is the connector's random choice): it is never used, nor deleted.
    param([string]$Folder, [bool]$AllowAdministrators)
    if ($null -ne (Get-FolderItem -Folder $Folder)) {
        Stop-UnsafeFolder -Folder $Folder -Reason 'existed before this run; refusing to use it'
    }
    $security = New-SystemOnlySecurity -AllowAdministrators $AllowAdministrators
    $null = [System.IO.Directory]::CreateDirectory($Folder, $security)
    Assert-OwnFolder -Folder $Folder -AllowAdministrators $AllowAdministrators
}

function Assert-WorkRoot {
    # The work root of an earlier run: SYSTEM's or Administrators' and no link, else refused;
    # its ACL is then set to ours again (an administrator may have widened it) and checked.
    $null = Assert-TrustedOwner -Folder $WorkRoot
    Set-Acl -LiteralPath $WorkRoot -AclObject (New-SystemOnlySecurity -AllowAdministrators $true)
    Assert-OwnFolder -Folder $WorkRoot -AllowAdministrators $true
}

function Remove-Tree {
    param([string]$Folder)
    if (-not (Test-Path -LiteralPath $Folder)) {
        return
    }
    $item = Get-Item -LiteralPath $Folder -Force
    if ($item.Attributes -band [System.IO.FileAttributes]::ReparsePoint) {
        # Delete the link itself, never what it points to.
        [System.IO.Directory]::Delete($Folder, $false)
        return
    }
    Remove-Item -LiteralPath $Folder -Recurse -Force
}

function Get-JobExclusions {
    # Defender path exclusions under our work root (ours: no one else writes there).
    $prefix = $WorkRoot + '\'
    $paths = @((Get-MpPreference).ExclusionPath)
    return @($paths | Where-Object { $_ -and ([string]$_).StartsWith($prefix, [System.StringComparison]::OrdinalIgnoreCase) })
}

function Remove-JobExclusion {
    param([string]$Folder)
    foreach ($path in @(Get-JobExclusions)) {
        if ($path.TrimEnd('\') -eq $Folder) {
            Remove-MpPreference -ExclusionPath $path
        }
    }
}

function Remove-StaleJobs {
    # Leftovers of runs that live response killed (RunScript stops after 10 minutes) or whose
    # cleanup action never came. Best effort: a failure here must not stop this run.
    # Called only once the work root was checked (Assert-WorkRoot or New-ProtectedFolder).
    $cutoff = (Get-Date).ToUniversalTime().AddHours(-$StaleAfterHours)
    if (Test-Path -LiteralPath $WorkRoot) {
        foreach ($dir in @(Get-ChildItem -LiteralPath $WorkRoot -Directory -Force)) {
            if ($dir.CreationTimeUtc -ge $cutoff) {
                continue
            }
            try {
                Remove-JobExclusion -Folder $dir.FullName
                Remove-Tree -Folder $dir.FullName
            }
            catch {
                Add-Note ('could not remove a stale job folder: ' + $_.Exception.Message)
            }
        }
    }
    try {
        foreach ($path in @(Get-JobExclusions)) {
            if (-not (Test-Path -LiteralPath $path)) {
                Remove-MpPreference -ExclusionPath $path
            }
        }
    }
    catch {
        Add-Note ('could not check Defender exclusions: ' + $_.Exception.Message)
    }
}

function Initialize-Collector {
    if (-not ('JoeDefender.Collector' -as [type])) {
        Add-Type -TypeDefinition $CollectorSource -Language CSharp
    }
}

function New-Hasher {
    # The CSP implementation also works where FIPS mode forbids the managed one.
    return (New-Object System.Security.Cryptography.SHA256CryptoServiceProvider)
}

function Find-InQuarantine {
    # Returns the matching ResourceData path, or $null. Nothing is written while searching.
    param([string]$Wanted, [byte[]]$DefenderKey, $Hasher)
    $scanned = 0
    $skipped = 0
    if (Test-Path -LiteralPath $QuarantineData) {
        foreach ($file in @(Get-ChildItem -LiteralPath $QuarantineData -Recurse -File -Force)) {
            if ($file.Length -gt $MaxFileBytes) {
                $skipped++
                continue
            }
            $payload = $null
            try {
                $payload = [JoeDefender.Collector]::FromQuarantine($file.FullName, $DefenderKey, '', $null, $Hasher)
            }
            catch {
                $skipped++
                continue
            }
            $scanned++
            if ($null -ne $payload -and $payload.Sha256 -eq $Wanted) {
                return $file.FullName
            }
        }
    }
    Add-Note ("quarantine: $scanned entries decoded, $skipped skipped")
    return $null
}

function Wait-Exclusion {
    param([string]$Folder)
    $deadline = (Get-Date).AddSeconds($ExclusionWaitSeconds)
    while ((Get-Date) -lt $deadline) {
        if (@(Get-JobExclusions) -contains $Folder) {
            return
        }
        Start-Sleep -Seconds 2
    }
    throw 'the temporary Defender exclusion did not show up in Get-MpPreference'
}

function Invoke-Restore {
    # MpCmdRun gets its arguments as an array: each one stays one argument, nothing is parsed.
    param([string]$OriginalPath, [string]$Destination)
    if (-not (Test-Path -LiteralPath $MpCmdRun)) {
        throw "MpCmdRun.exe not found at $MpCmdRun"
    }
    $arguments = @('-Restore', '-FilePath', $OriginalPath, '-Path', $Destination)
    $previous = $ErrorActionPreference
    $ErrorActionPreference = 'Continue'
    try {
        $null = & $MpCmdRun @arguments 2>&1
        $code = $LASTEXITCODE
    }
    finally {
        $ErrorActionPreference = $previous
    }
    if ($code -ne 0) {
        Add-Note ("MpCmdRun -Restore exited with $code")
    }
}

function Initialize-Job {
    # The work root (made now, or checked), leftovers of older runs removed, and a job folder
    # made now: both SYSTEM's own, or the run stops with status unsafe_folder.
    $jobFolder = Get-JobFolder
    if ($null -eq (Get-FolderItem -Folder $WorkRoot)) {
        New-ProtectedFolder -Folder $WorkRoot -AllowAdministrators $true
    }
    else {
        Assert-WorkRoot
    }
    Remove-StaleJobs
    try {
        Remove-JobExclusion -Folder $jobFolder
    }
    catch {
        Add-Note ('could not check Defender exclusions: ' + $_.Exception.Message)
    }
    New-ProtectedFolder -Folder $jobFolder -AllowAdministrators $false
    Initialize-Collector
    return $jobFolder
}

function Invoke-Collect {
    if ($Sha256 -eq '') {
        Set-Outcome -Status 'error' -Message 'Sha256 is required in Collect mode'
        return
    }
    $wanted = $Sha256.ToLowerInvariant()
    $jobFolder = Initialize-Job
    $samplePath = Join-Path $jobFolder $SampleFileName
    $hasher = New-Hasher
    $rc4Key = [JoeDefender.Collector]::FromHex($DefenderRc4KeyHex)
    $defangKey = [JoeDefender.Collector]::FromHex($DefangKeyHex)
    try {
        $entry = Find-InQuarantine -Wanted $wanted -DefenderKey $rc4Key -Hasher $hasher
        if ($null -eq $entry) {
            Set-Outcome -Status 'not_found' -Message 'no quarantined file has this SHA-256'
            return
        }
        $payload = [JoeDefender.Collector]::FromQuarantine($entry, $rc4Key, $samplePath, $defangKey, $hasher)
        if ($null -eq $payload -or $payload.Sha256 -ne $wanted) {
            throw 'the quarantine entry changed while it was being read'
        }
        Set-Outcome -Status 'found' -Hash $wanted -Size $payload.Size -Path $samplePath -Source 'quarantine'
    }
    finally {
        $hasher.Dispose()
    }
}

function ConvertFrom-HexText {
    # -OriginalPathHex back to text (UTF-8), checked like the old -OriginalPath parameter was.
    param([string]$Hex)
    $bytes = [byte[]]::new($Hex.Length / 2)
    for ($k = 0; $k -lt $bytes.Length; $k++) {
        $bytes[$k] = [System.Convert]::ToByte($Hex.Substring(2 * $k, 2), 16)
    }
    $text = [System.Text.Encoding]::UTF8.GetString($bytes)
    if ($text -notmatch $OriginalPathPattern) {
        throw 'OriginalPathHex is not an absolute path without wildcards'
    }
    return $text
}

function Assert-SystemOnlyFile {
    # The restored file itself, not only its folder: no reparse point, and only SYSTEM and
    # Administrators may touch it (MpCmdRun may restore the original file's own ACL).
    param([string]$Path)
    $item = Get-Item -LiteralPath $Path -Force
    if ($item.Attributes -band [System.IO.FileAttributes]::ReparsePoint) {
        throw "a restored file is a reparse point; refusing to read it"
    }
    $acl = Get-Acl -LiteralPath $Path
    foreach ($rule in @($acl.GetAccessRules($true, $true, [System.Security.Principal.SecurityIdentifier]))) {
        $sid = $rule.IdentityReference.Value
        if ($sid -ne $SystemSid -and $sid -ne $AdministratorsSid) {
            $security = New-Object System.Security.AccessControl.FileSecurity
            $security.SetAccessRuleProtection($true, $false)
            $identity = New-Object System.Security.Principal.SecurityIdentifier($SystemSid)
            $security.AddAccessRule((New-Object System.Security.AccessControl.FileSystemAccessRule(
                        $identity,
                        [System.Security.AccessControl.FileSystemRights]::FullControl,
                        [System.Security.AccessControl.AccessControlType]::Allow)))
            Set-Acl -LiteralPath $Path -AclObject $security
            Add-Note 'a restored file had a wider ACL; it was narrowed to SYSTEM'
            return
        }
    }
}

function Invoke-RestoreMode {
    if ($Sha256 -eq '' -or $OriginalPathHex -eq '') {
        Set-Outcome -Status 'error' -Message 'Sha256 and OriginalPathHex are required in Restore mode'
        return
    }
    $wanted = $Sha256.ToLowerInvariant()
    $originalPath = ConvertFrom-HexText -Hex $OriginalPathHex
    $jobFolder = Initialize-Job
    $samplePath = Join-Path $jobFolder $SampleFileName
    $restoreFolder = Join-Path $jobFolder 'restore'
    $hasher = New-Hasher
    $defangKey = [JoeDefender.Collector]::FromHex($DefangKeyHex)
    $exclusionAdded = $false
    try {
        # Restore that one path into the excluded, SYSTEM-only job folder; keep only the match.
        $exclusionAdded = $true
        Add-MpPreference -ExclusionPath $jobFolder
        Wait-Exclusion -Folder $jobFolder
        New-ProtectedFolder -Folder $restoreFolder -AllowAdministrators $false
        Invoke-Restore -OriginalPath $originalPath -Destination $restoreFolder
        foreach ($file in @(Get-ChildItem -LiteralPath $restoreFolder -Recurse -File -Force)) {
            if ($file.Length -gt $MaxFileBytes) {
                continue
            }
            Assert-SystemOnlyFile -Path $file.FullName
            $payload = [JoeDefender.Collector]::FromPlainFile($file.FullName, '', $null, $hasher)
            if ($payload.Sha256 -eq $wanted) {
                $payload = [JoeDefender.Collector]::FromPlainFile($file.FullName, $samplePath, $defangKey, $hasher)
                if ($payload.Sha256 -ne $wanted) {
                    throw 'the restored file changed while it was being read'
                }
                Set-Outcome -Status 'found' -Hash $wanted -Size $payload.Size -Path $samplePath -Source 'restore'
                return
            }
        }
        Set-Outcome -Status 'not_found' -Message 'restoring the original path gave no match'
    }
    finally {
        # Whatever happened: first every restored plaintext goes (while the exclusion still
        # keeps real-time protection from detecting or locking it), then the exclusion.
        try {
            if (Test-Path -LiteralPath $restoreFolder) {
                Remove-Item -LiteralPath $restoreFolder -Recurse -Force
            }
        }
        catch {
            Add-Note ('could not delete the restored files: ' + $_.Exception.Message)
        }
        if ($exclusionAdded) {
            try {
                Remove-MpPreference -ExclusionPath $jobFolder
            }
            catch {
                Add-Note ('could not remove the temporary exclusion: ' + $_.Exception.Message)
            }
        }
        $hasher.Dispose()
    }
}

function Invoke-Cleanup {
    $jobFolder = Get-JobFolder
    if ($null -ne (Get-FolderItem -Folder $WorkRoot)) {
        Assert-WorkRoot
    }
    try {
        Remove-JobExclusion -Folder $jobFolder
    }
    catch {
        Add-Note ('could not check Defender exclusions: ' + $_.Exception.Message)
    }
    Remove-Tree -Folder $jobFolder
    Remove-StaleJobs
    Set-Outcome -Status 'cleaned'
}

try {
    if ($Mode -eq '' -or $JobId -eq '') {
        Set-Outcome -Status 'error' -Message 'Mode and JobId are required'
    }
    elseif ($Mode -eq 'Cleanup') {
        $null = Invoke-Cleanup
    }
    elseif ($Mode -eq 'Restore') {
        $null = Invoke-RestoreMode
    }
    else {
        $null = Invoke-Collect
    }
}
catch {
    if ($script:UnsafeFolder) {
        Set-Outcome -Status 'unsafe_folder' -Message $script:UnsafeFolder
    }
    else {
        Set-Outcome -Status 'error' -Message ('failed: ' + $_.Exception.Message)
    }
}
if ($null -eq $script:Outcome) {
    Set-Outcome -Status 'error' -Message 'the script ended without an outcome'
}

$exitCode = 1
if ($script:Outcome.status -eq 'found' -or $script:Outcome.status -eq 'cleaned') {
    $exitCode = 0
}
elseif ($script:Outcome.status -eq 'not_found') {
    $exitCode = 2
}
Write-Output (Format-OutputLine)
exit $exitCode
