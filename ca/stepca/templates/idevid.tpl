{{- /*
  rootline IDevID profile (IEEE 802.1AR-2018), for step-ca's JWK provisioner
  "rootline-idevid". The rootline/ca/stepca client puts the facts of the
  request in the token's "rootline" claim, computed as ca.Checked.Template
  computes them for the local backend; this template fixes the profile:
  key usage, notAfter 99991231235959Z, no extended key usage, and the
  chip's DiceTcbInfo copied from its CSR. Nothing else of the CSR is used.
*/ -}}
{
	"subject": {
		{{- with .Token.rootline.organization }}
		"organization": {{ toJson . }},
		{{- end }}
		"commonName": {{ toJson .Token.rootline.product }},
		"serialNumber": {{ toJson .Token.rootline.ueid }}
	},
	"serialNumber": {{ toJson .Token.rootline.serial }},
	"notBefore": {{ toJson .Token.rootline.notBefore }},
	"notAfter": "9999-12-31T23:59:59Z",
	"keyUsage": ["digitalSignature"],
	"subjectKeyId": {{ toJson .Token.rootline.subjectKeyId }},
	{{- with .Token.rootline.crlDistributionPoints }}
	"crlDistributionPoints": {{ toJson . }},
	{{- end }}
	"extensions": [
		{"id": "2.5.29.17", "critical": false, "value": {{ toJson .Token.rootline.subjectAltName }}}
		{{- range .Insecure.CR.Extensions }}
		{{- if eq (toJson .ID) "\"2.23.133.5.4.1\"" }},
		{"id": "2.23.133.5.4.1", "critical": false, "value": {{ toJson .Value }}}
		{{- end }}
		{{- end }}
	]
}
