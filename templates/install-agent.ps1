# CertHub: downloads the agent from {{SERVER}}, installs it for this Windows user and pairs this PC.
# Paste in PowerShell:  irm "{{SERVER}}/agent/install.ps1?code=XXXX-XXXX-XX" | iex
$ErrorActionPreference = 'Stop'
$server = '{{SERVER}}'
$code = '{{CODE}}'
$download = Join-Path $env:TEMP 'Certhub.Agent.exe'
Write-Host "CertHub: baixando o agente de $server ..."
Invoke-WebRequest -UseBasicParsing -Uri "$server/agent/certhub-agent.exe" -OutFile $download
& $download install
if ($LASTEXITCODE -ne 0) { throw "CertHub: a instalação do agente falhou (código $LASTEXITCODE)." }
$agent = Join-Path $env:ProgramData 'CertHubAgent\publish\Certhub.Agent.exe'
if ($code -ne '') {
    & $agent pair --server $server --code $code
    if ($LASTEXITCODE -ne 0) { throw "CertHub: o pareamento falhou (código $LASTEXITCODE). Peça um novo código ao administrador." }
}
Remove-Item $download -ErrorAction SilentlyContinue
Start-Process $agent
Write-Host 'CertHub: agente instalado e pareado. O ícone aparece ao lado do relógio.'
