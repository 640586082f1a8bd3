export http_proxy=http://proxy.invalid:3128/
