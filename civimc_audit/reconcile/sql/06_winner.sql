-- Step 6 — who wins (DESIGN "Who wins"): no CiviCRM history row => Mailchimp (if a member
-- exists); member absent => CiviCRM; otherwise the later date; a tie to the second goes to
-- CiviCRM (policy tie_winner may give it to Mailchimp). A member with no last_changed loses.
CREATE OR REPLACE TEMP TABLE decided AS
SELECT p.*,
       CASE
           WHEN NOT p.has_member THEN 'civicrm'
           WHEN NOT p.has_history THEN 'mailchimp'
           WHEN p.mailchimp_changed IS NULL THEN 'civicrm'
           WHEN date_trunc('second', p.civicrm_changed) > date_trunc('second', p.mailchimp_changed)
               THEN 'civicrm'
           WHEN date_trunc('second', p.civicrm_changed) = date_trunc('second', p.mailchimp_changed)
               THEN getvariable('tie_winner')
           ELSE 'mailchimp'
       END AS winner,
       p.has_member AND p.has_history AND p.mailchimp_changed IS NOT NULL
           AND date_trunc('second', p.civicrm_changed) = date_trunc('second', p.mailchimp_changed)
           AS tie
FROM people p;
