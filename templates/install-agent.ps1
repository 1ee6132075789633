# CertHub: downloads the agent from this server, checks it, installs it for this Windows user
# and pairs this PC. Paste in PowerShell the line the administrator's Dispositivos page shows.
$ErrorActionPreference = 'Stop'
$server = {{SERVER}}
$code = {{CODE}}
# SHA-256 of the server's TLS certificate (empty: plain HTTP, or a certificate Windows trusts).
$fingerprint = {{FINGERPRINT}}
# SHA-256 of the agent this server serves: nothing else is run.
$agentSha256 = {{AGENT_SHA256}}
$allowHttp = {{ALLOW_HTTP}}

if ($server.StartsWith('http://') -and -not $allowHttp) {
    throw 'CertHub: este servidor usa http:// sem criptografia; alguém na rede poderia trocar o agente. Configure HTTPS no servidor (tls = "auto") ou, se aceitar o risco, agent_install_over_http = true.'
}
if ($agentSha256 -eq '') {
    throw 'CertHub: este servidor não tem o agente para baixar (agent_exe_file). Avise o administrador.'
}
[Net.ServicePointManager]::SecurityProtocol = [Net.SecurityProtocolType]::Tls12
if ($fingerprint -ne '') {
    # Only the server's own certificate: a stand-in on the network is refused.
    [Net.ServicePointManager]::ServerCertificateValidationCallback = {
        param($sender, $certificate, $chain, $errors)
        $sha = [Security.Cryptography.SHA256]::Create()
        ([BitConverter]::ToString($sha.ComputeHash($certificate.GetRawCertData())) -replace '-', '') -eq $fingerprint
    }
}

$download = Join-Path $env:TEMP ('Certhub.Agent.' + [guid]::NewGuid().ToString('N') + '.exe')
Write-Host "CertHub: baixando o agente de $server ..."
Invoke-WebRequest -UseBasicParsing -Uri "$server/agent/certhub-agent.exe" -OutFile $download
$got = (Get-FileHash -Algorithm SHA256 -LiteralPath $download).Hash
if ($got -ne $agentSha256) {
    Remove-Item -LiteralPath $download -ErrorAction SilentlyContinue
    throw "CertHub: o agente baixado não confere com o do servidor (SHA-256 $got, esperado $agentSha256). Nada foi instalado."
}
& $download install
if ($LASTEXITCODE -ne 0) { throw "CertHub: a instalação do agente falhou (código $LASTEXITCODE)." }
Remove-Item -LiteralPath $download -ErrorAction SilentlyContinue
$agent = Join-Path $env:ProgramData 'CertHubAgent\publish\Certhub.Agent.exe'
if ($code -ne '') {
    if ($fingerprint -ne '') {
        & $agent pair --server $server --code $code --fingerprint $fingerprint
    } else {
        & $agent pair --server $server --code $code
    }
    if ($LASTEXITCODE -ne 0) { throw "CertHub: o pareamento falhou (código $LASTEXITCODE). Peça um novo código ao administrador." }
}
Start-Process $agent
Write-Host 'CertHub: agente instalado e pareado. O ícone aparece ao lado do relógio.'
