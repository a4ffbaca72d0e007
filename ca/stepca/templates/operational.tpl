{{- /*
  rootline operational certificate profile (the verifier's short-lived
  clientAuth certificate of an affirmed device), for step-ca's JWK
  provisioner "rootline-operational". The token's "rootline" claim carries
  the request's facts and validity (ca.Checked.Template); the template
  fixes key usage and clientAuth.
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
	"notAfter": {{ toJson .Token.rootline.notAfter }},
	"keyUsage": ["digitalSignature"],
	"extKeyUsage": ["clientAuth"],
	"subjectKeyId": {{ toJson .Token.rootline.subjectKeyId }},
	{{- with .Token.rootline.crlDistributionPoints }}
	"crlDistributionPoints": {{ toJson . }},
	{{- end }}
	"extensions": [
		{"id": "2.5.29.17", "critical": false, "value": {{ toJson .Token.rootline.subjectAltName }}}
	]
}
