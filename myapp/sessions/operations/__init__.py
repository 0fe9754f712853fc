"""What an operator or an app does with the sessions beside serving requests: purge
expired ones (``purge``), end a user's sessions everywhere (``ending``), ``/healthz`` and
the 503/409/413 answers (``health``), and who may see operator details
(``operatoraccess``). Nothing below this folder imports it."""
